"""The config form's style sheet: its layout for the width of the pane it is in.

The form (form.py) puts it in its own <style>: ipywidgets Layouts are inline styles, which no
query can override, so every width the layout depends on is here.
"""

# The narrow layout's rules: under a container query, and a media query where there is none.
NARROW_CSS = """
  .sm-magic-form .sm-magic-line { grid-template-columns: minmax(0, 1fr); row-gap: 1px; }
  .sm-magic-form .sm-magic-label > .widget-html-content > div { text-align: left; padding-top: 4px;
    font-weight: 600; }
  .sm-magic-form .sm-magic-help > .widget-html-content > div { padding-top: 0; }
  .sm-magic-form .sm-magic-error { margin-left: 0; }
  /* A checkbox sits before its label, as checkboxes do; the help goes under both. */
  .sm-magic-form .sm-magic-line-bool { grid-template-columns: 20px minmax(0, 1fr); column-gap: 6px; }
  .sm-magic-form .sm-magic-line-bool > .sm-magic-control { grid-column: 1; grid-row: 1; }
  .sm-magic-form .sm-magic-line-bool > .sm-magic-label { grid-column: 2; grid-row: 1; }
  .sm-magic-form .sm-magic-line-bool > .sm-magic-help { grid-column: 1 / -1; grid-row: 2; }
"""
# Wide: label | control | help. Narrow (a pane under 720 px: a 900 px window with JupyterLab's
# file browser open, a phone): one column, label above control, help under it, so the help is
# never squeezed into a sliver and no control is cut off. The widths are here, not in ipywidgets
# Layouts, because a Layout is an inline style that a query cannot override.
CSS = """
.sm-magic-form { container-type: inline-size; min-width: 0; overflow: visible; }
.sm-magic-form .sm-magic-line { display: grid; grid-template-columns: 190px 280px minmax(0, 1fr);
  column-gap: 10px; align-items: start; }
.sm-magic-form .sm-magic-line > .jupyter-widgets { width: auto; min-width: 0; margin-left: 0; margin-right: 0; }
.sm-magic-form .sm-magic-control, .sm-magic-form .sm-magic-instance-specs { width: auto; min-width: 0;
  margin-left: 0; margin-right: 0; }
.sm-magic-form .sm-magic-control input, .sm-magic-form .sm-magic-control select,
.sm-magic-form .sm-magic-control textarea { min-width: 0; width: 100%; box-sizing: border-box; }
.sm-magic-form .sm-magic-label > .widget-html-content > div { text-align: right; padding-top: 6px; }
.sm-magic-form .sm-magic-help > .widget-html-content > div { padding-top: 5px; }
.sm-magic-form .sm-magic-error { margin-left: 200px; }
.sm-magic-form .sm-magic-title { overflow-wrap: anywhere; }
/* Sticky needs every box between the form and the notebook's scroller to let it overflow:
   JupyterLab's output boxes clip (overflow auto/hidden), so for this form's output only they
   don't; the form never overflows sideways. A cell whose outputs are scrolled keeps its own. */
.jp-Cell:not(.jp-mod-outputsScrolled) .jp-Cell-outputArea:has(.sm-magic-form),
.jp-Cell:not(.jp-mod-outputsScrolled) .jp-OutputArea-child:has(.sm-magic-form),
.jp-Cell:not(.jp-mod-outputsScrolled) .jp-OutputArea-output:has(.sm-magic-form) { overflow: visible; }
.sm-magic-form .sm-magic-actions { position: sticky; top: 0; z-index: 5; padding: 2px 0;
  background: var(--jp-layout-color0, #fff); border-bottom: 1px solid var(--jp-border-color2, #e0e0e0); }
.sm-magic-form .sm-magic-actions .widget-button, .sm-magic-form .sm-magic-more .widget-toggle-button {
  width: auto; min-width: 90px; }
/* A launched job's progress scrolls sideways inside the form if it must, never past it. */
.sm-magic-form .sm-magic-form-output { max-width: 100%; overflow-x: auto; }
.sm-magic-form h4.sm-magic-group { margin: 10px 0 2px 0; }
@container (max-width: 719px) {
{NARROW}}
/* A browser without container queries (Firefox before 110, Safari before 16) goes by the
   window: under 1000 px it may hold a pane under 720 px. */
@supports not (container-type: inline-size) { @media (max-width: 999px) {
{NARROW}} }
"""
CSS = CSS.replace("{NARROW}", NARROW_CSS.lstrip("\n"))
