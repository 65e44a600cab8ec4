"""Tables, plots, comparisons and model cards built from runs (`harness report`)."""
