"""The mapper's rules, without I/O: what a change is decided from (`knowledge`), how (`decision`, `mapping`,
`transforms`), which changes of a batch are decided side by side (`batching`), and what a decision leaves (`model`).
"""
