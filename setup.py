from setuptools import find_packages, setup

setup(
    name="incoming",
    version="0.2.0.dev0",
    description="Large-file upload server: resumable browser uploads (tus) handed over to your web app",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(exclude=["tests", "tests.*"]) + ["twisted.plugins"],
    package_data={
        "incoming.web": ["static/*"],
        "twisted": ["plugins/incoming_plugin.py"],
    },
    install_requires=[
        "Twisted>=24.7",
        "klein>=24.8",
        "treq>=24.9",
        "service-identity>=24.1",
        "pyOpenSSL",
        "idna",
        "Automat>=24.8",
        "attrs",
        "zope.interface",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            "requests>=2.31",
            "playwright>=1.45",
            "tuspy>=1.1",
        ],
    },
)
