"""``manage.py demo_admin``: create the demo superuser if it is missing, and print its login."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Create the example project's superuser if no user has that name; an existing user "
        "is left as it is (its password is not reset)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="admin")

    def handle(self, *args: Any, username: str, password: str, **options: Any) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(username=username).exists():
            self.stdout.write(f"User {username!r} exists; left unchanged (log in as before).")
            return
        user_model.objects.create_superuser(
            username=username, email=f"{username}@example.invalid", password=password
        )
        self.stdout.write(f"Created superuser {username!r} with password {password!r}.")
