"""The Gradio workbench: the run form, the live viewer, the history and the other sections."""
