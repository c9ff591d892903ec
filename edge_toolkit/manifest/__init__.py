"""Deployment manifests: `deployment.template.json` → `deployment.<platform>.json`, validated offline.

Pure modules (`placeholders`, `create_options`, `validate`) hold the IoT Edge rules; `template`
reads files and `generate` ties them together.
"""
