"""The LLM client: the chat contract (chat), the batched OpenAI-compatible client with retries and usage (client),
and the content-addressed request cache (cache)."""
