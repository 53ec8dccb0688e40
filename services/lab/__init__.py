"""The lab's control plane: infrastructure providers, the process supervisor and the ``lab`` command."""
