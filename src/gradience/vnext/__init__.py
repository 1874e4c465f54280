"""Compatibility names from Gradience v0.3.x (`gradience.vnext.*`); the code lives elsewhere."""
