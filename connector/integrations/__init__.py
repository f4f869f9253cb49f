"""One module per integration; each subclasses connector.integrations.base.Integration."""
