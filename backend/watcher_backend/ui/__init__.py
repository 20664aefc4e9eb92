"""The dashboard's static files (index.html, app.js, app.css), served by ``routers/ui.py``: no CDN, no build."""
