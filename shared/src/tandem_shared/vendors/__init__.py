"""The vendor APIs Tandem talks to, one package each: the one HTTP client (auth, the shared request budget behind
a priority gate, error classification), pure classification, schema readers and request-body builders."""
