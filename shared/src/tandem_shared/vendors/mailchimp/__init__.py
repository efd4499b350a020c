"""Mailchimp Marketing API 3.0 as Tandem uses it: the account client, classification, schema readers, bodies."""
