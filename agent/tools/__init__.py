"""One-shot commands: detect, build-engine, inspect, bench, quantize and the model tools behind them."""
