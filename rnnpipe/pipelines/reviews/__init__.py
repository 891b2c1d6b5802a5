"""The review-sentiment pipeline (`reviews`): raw text in, a class out."""
