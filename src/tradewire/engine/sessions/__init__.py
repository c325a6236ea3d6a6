"""Sessions: backtest, paper and live jobs with a simulated broker and stored results."""
