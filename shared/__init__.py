"""Code that the server, the bot and the client all need. Standard library only:
the bot zip ships this package."""
