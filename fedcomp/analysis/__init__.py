"""The analysis layer: run directories in, tables and figures out.

``runs`` finds and loads run directories, ``stats`` holds the statistics over seeds,
``tables`` computes the runs, summary and paper tables, ``formats`` writes them as CSV,
Markdown and LaTeX, ``style`` and ``figures`` draw the figures. Only ``fedcomp.core``
is imported from below.
"""
