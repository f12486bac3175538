"""Policies: one folder per method (tla/, bc/, dp/) behind the one interface in `base`."""
