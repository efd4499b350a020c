"""Helpers shared by the test suites: the real broker, the running stack, waiting without timed assertions."""
