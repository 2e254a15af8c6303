"""ACME issuance for certform: client, challenge solvers and renewal information."""
