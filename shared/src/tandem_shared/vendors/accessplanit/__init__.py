"""accessplanit API v2 as Tandem uses it: the budgeted client, classification, schema readers, bodies, settings."""
