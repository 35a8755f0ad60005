"""Who may call: API keys, their limits and budgets, and the admission of each request."""
