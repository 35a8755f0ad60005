"""The API role: validates OpenAI-shaped requests, queues generations, relays their events to clients."""
