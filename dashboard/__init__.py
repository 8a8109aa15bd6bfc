"""The Streamlit Pareto dashboard (``mbnas dashboard``): ``data`` computes, ``figures`` draws,
``app`` lays out; ``fast_read`` reads large studies, ``browser`` drives it in headless Chromium and
``synthetic`` writes test studies. Importing this package imports nothing heavy."""
