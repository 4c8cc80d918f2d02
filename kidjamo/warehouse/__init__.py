"""Warehouse access: the PostgreSQL side of Kidjamo (roles and clinician logins)."""
