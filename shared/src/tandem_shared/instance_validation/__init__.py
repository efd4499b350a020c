"""Instance validation: the product rules (`rules`, pure) and the live schema reads they use (`live`)."""
