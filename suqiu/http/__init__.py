"""Floor 5, the HTTP column: the API, its OpenAPI contract and the server that parses requests."""
