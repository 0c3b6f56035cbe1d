"""OTP-style supervision trees for OS processes (placeholder: being implemented)."""

__all__: list[str] = []
