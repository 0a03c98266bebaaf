"""Django integration: ``python manage.py runserver`` served by asgigw.

Add ``"gateway.django"`` to ``INSTALLED_APPS`` *before* ``django.contrib.staticfiles`` (Django
picks the first app that provides a command, and staticfiles ships its own ``runserver``).
See docs/django-runserver.md. Nothing here is imported by ``gateway`` itself, so asgigw
does not need Django unless this app is installed.
"""
