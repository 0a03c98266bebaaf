"""Forms of the rooms app (both submitted with a CSRF token)."""

from typing import ClassVar

from django import forms

from .models import Message, Room


class RoomForm(forms.ModelForm):
    """Create a room (the index page)."""

    class Meta:
        model = Room
        fields = ("name",)
        help_texts: ClassVar[dict[str, str]] = {"name": "Letters, digits, hyphens and underscores."}


class MessageForm(forms.ModelForm):
    """Post a message without JavaScript (the room page)."""

    class Meta:
        model = Message
        fields = ("author", "text")
        widgets: ClassVar[dict[str, forms.Widget]] = {"text": forms.TextInput()}
