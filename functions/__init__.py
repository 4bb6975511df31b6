"""The Cloud Functions of the serverless Swarming and the server logic behind them."""
