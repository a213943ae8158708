"""model_components"""
