# Voila configuration for the Nexus monitor. Used with:
#   JUPYTER_CONFIG_PATH=deploy/voila voila dashboards/monitor.ipynb
# (or `make voila`, which sets it). Read by Voila at start; values here are the repo's defaults.
import os

from dashboards._voila import prelaunch_hook

# No CDN is reachable on the project's machines: Bokeh/Panel JS must be inlined in the page. Set in the
# Voila process (kernels inherit it) rather than in the notebook, so papermill outputs stay small.
os.environ.setdefault("PANEL_INLINE", "true")

c = get_config()  # noqa: F821 - provided by traitlets when it runs this file

c.VoilaConfiguration.template = "lab"
c.VoilaConfiguration.theme = "light"
c.VoilaConfiguration.show_tracebacks = True
# Kernels of closed pages shut down: the page's unload beacon passes the XSRF check (see dashboards/_voila.py).
c.VoilaConfiguration.prelaunch_hook = prelaunch_hook
c.VoilaConfiguration.http_keep_alive_timeout = 10
# Only notebooks' own assets; never configuration, stores or sources.
c.VoilaConfiguration.file_allowlist = [r"(?!.*\.(py|json|toml|duckdb|sqlite)$).*"]

c.VoilaExecutor.timeout = 120        # seconds a cell may run while the page renders
c.VoilaExecutor.iopub_timeout = 20

# A backstop for pages whose unload beacon never arrived (browser crash, network cut): kernels idle for
# an hour are culled. A page's periodic callback counts as activity, so this is not the main mechanism.
c.MappingKernelManager.cull_idle_timeout = 3600
c.MappingKernelManager.cull_interval = 300
c.MappingKernelManager.cull_connected = False
