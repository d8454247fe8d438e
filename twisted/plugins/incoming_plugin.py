"""
The twistd plugin: C{twistd incoming} runs the Incoming!! server.
"""

from twisted.application.service import ServiceMaker

incoming = ServiceMaker(
    "Incoming!!",
    "incoming.service",
    "Large-file upload server: tus uploads with tickets, handed over to your backend.",
    "incoming",
)
