"""The response: contain, investigate, capture, verify and restore."""
