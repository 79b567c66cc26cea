"""The backtest: what every control would have done across recorded history."""
