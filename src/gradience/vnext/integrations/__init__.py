"""v0.3.x import path for the training integrations; see `gradience.integrations`."""
