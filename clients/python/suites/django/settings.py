"""Django settings for running Django's own cache tests against pg_cache."""

import os

SECRET_KEY = "pg_cache tests"
USE_TZ = False
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions", "cache"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PG_CACHE_TEST_HOST", "127.0.0.1"),
        "PORT": os.environ["PG_CACHE_TEST_PORT"],
        "USER": "postgres",
        "NAME": "django_pg_cache",
    }
}
CACHES = {"default": {"BACKEND": "pg_cache_client.django.PgCache", "LOCATION": "django"}}
MIDDLEWARE = []
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
ROOT_URLCONF = None
