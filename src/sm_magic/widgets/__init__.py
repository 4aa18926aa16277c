"""Progress displays: text (here), ipywidgets later."""
