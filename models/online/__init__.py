"""Online learning code: statistics and models updated per event, with no I/O."""
