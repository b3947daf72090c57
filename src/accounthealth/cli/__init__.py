"""The `accounthealth` command line."""
