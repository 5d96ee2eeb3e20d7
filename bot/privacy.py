"""Keeping phone numbers and codes out of sight."""

import phonenumbers


def mask_phone(e164: str) -> str:
    """Show the country calling code and the last four digits only: ``+44•••••0123``."""
    try:
        prefix = f"+{phonenumbers.parse(e164).country_code}"
    except phonenumbers.NumberParseException:
        prefix = "+"
    return f"{prefix}•••••{e164[-4:]}"
