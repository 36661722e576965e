"""sumpref: preference-tuning summarizers with synthetic, question-answering feedback.

The library never imports Prefect: flows/ and tasks/ wrap it.
"""

__version__ = "0.1.0"
