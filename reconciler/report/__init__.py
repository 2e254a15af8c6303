"""``certform report``: the inventory as one self-contained HTML page.

``model.py`` builds the data (pure: config, state, audit rows and a clock in,
frozen rows out), ``timeline.py`` places the next 90 days' expiries on an SVG
axis, ``audit_summary.py`` condenses the audit log, and ``render.py`` fills the
template shipped beside them (``templates/``) in a sandboxed, autoescaping
jinja2 environment.  Only public data enters the model: no key, no target
setting beyond its type and identity, so the page cannot leak what it never got.
"""
