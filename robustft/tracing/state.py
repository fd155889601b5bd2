"""What the tracing package and its OpenTelemetry half (`tracing.otel`) share, in a leaf module so
that neither imports the other for it: the count of traced runs open in this process, which the
call path tests before reporting anything (`tracing.state.runs`), and the install hint."""

# Runs in this process with tracing on (an OtelTracing made and not yet closed); while it is 0 the
# backend hooks (`tracing.reply`, `tracing.failover`) are not called.
runs = 0

INSTALL = "pip install -e '.[otel]' in the robustft clone"
