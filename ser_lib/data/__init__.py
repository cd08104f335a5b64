"""ser_lib.data."""
