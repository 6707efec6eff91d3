"""The Django middleware live routes run through by default (CONTENT_ASGI_ROUTE_MIDDLEWARE).

django-guid gives the request its Correlation-ID (the client's, or a new one) as the API
and the content path do; sessions and authentication give views ``request.user`` as
Django views in the API have it (both are lazy: no query unless a view reads the user).
"""

DEFAULT = (
    "django_guid.middleware.guid_middleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
)
