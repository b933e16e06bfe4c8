"""The plugin's one Blueprint: notification intake, status and metrics."""
from flask import jsonify
from flask_smorest import Blueprint

bp = Blueprint("notification", __name__, url_prefix="/",
               description="Receive S3 event notifications and keep the index in sync.")


@bp.route("/webhook/notify", methods=["POST", "HEAD"], strict_slashes=False)
def notify():
    """Receive S3 event notifications (placeholder until intake lands)."""
    return jsonify({"accepted": 0, "ignored": 0})
