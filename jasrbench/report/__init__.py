"""Reports: LaTeX/CSV/Markdown tables, figures, the regression gate."""
