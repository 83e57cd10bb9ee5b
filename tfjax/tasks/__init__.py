"""One module per task (an objective on a model family, with its own metric); `registry` maps
the names configs give (`config.task`) to them."""
