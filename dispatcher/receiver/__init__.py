"""The receiving side: verifying signed webhooks (``verify``), framework helpers (``integrations``) and
the pull consumers' client (``pull``). Nothing here talks to the dispatcher's Redis."""
