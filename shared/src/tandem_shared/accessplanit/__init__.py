"""accessplanit API v2 as Tandem uses it: response classification (pure), the budgeted client, their settings."""
