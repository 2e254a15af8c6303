"""Issuers: who signs certform's certificates, behind one small interface.

``base.Issuer`` is to issuers what ``providers.base.Target`` is to targets: a
typed spec per kind, its own re-issue checks, issue and revoke, and what it
can be combined with.  ``registry`` finds the issuer of an authority type or of
a spec; nothing outside it branches on an issuer's type.
"""
