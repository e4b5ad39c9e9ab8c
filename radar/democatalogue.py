"""A deterministic demo listing catalogue, for trying `radar impact` without a real one.

The titles mix everyday goods with the product types the starter policy is about (chargers, magnetic
toys, e-cigarettes, knives, laser pointers, drones, supplements…), in the language of each market, and
include near misses a good matcher must not hit ("Supercharger", "ivory white dress", "laser level").
Columns: id, title, description, market, category, brand, seller (see radar/catalogue.py).
"""

from __future__ import annotations

import csv
import logging
import random
from pathlib import Path

log = logging.getLogger(__name__)

MARKETS = {"DE": 0.24, "FR": 0.18, "GB": 0.22, "IT": 0.12, "ES": 0.10, "NL": 0.08, "PL": 0.06}
LANGUAGE = {"DE": "de", "FR": "fr", "GB": "en", "IT": "it", "ES": "es", "NL": "nl", "PL": "pl"}
BRANDS = ["Anker", "Voltix", "Kidora", "Lumo", "Nordwerk", "Maison Clair", "Brixton & Co", "Vaporia", "Skyhawk",
          "Ferro", "Zenlab", "Petito", "Casa Viva", "Polar Peak", "Ugreen", "Hanse Home", "Atelier Roux", "Blitz"]
COLOURS = {"en": ["black", "white", "blue", "red", "ivory white", "grey"], "de": ["schwarz", "weiß", "blau", "rot", "grau"],
           "fr": ["noir", "blanc", "bleu", "rouge", "gris"], "it": ["nero", "bianco", "blu"], "es": ["negro", "blanco", "azul"],
           "nl": ["zwart", "wit", "blauw"], "pl": ["czarny", "biały", "niebieski"]}

# (category, weight, {language: [title templates]}); "en" is the fallback for a market's language.
PRODUCTS: list[tuple[str | None, float, dict[str, list[str]]]] = [
    ("cat.electrical.chargers", 6.0, {
        "en": ["{brand} 20W USB C Charger Fast Charging Plug", "{brand} 65W GaN Wall Charger 3 Port", "Phone Charger Plug {brand} UK 2-Pack",
               "{brand} Laptop Charger 90W Universal Power Adapter", "Charger Case for AirPods {colour}", "Wireless charging pad {brand} 15W"],
        "de": ["{brand} USB C Ladegerät 20W Schnellladegerät", "{brand} 65W Netzteil USB-C GaN", "Steckernetzteil 12V 2A {brand}",
               "Ladekabel USB-C 2m {colour}", "{brand} Schnellladegerät für iPhone"],
        "fr": ["Chargeur USB C 20W {brand} charge rapide", "{brand} Adaptateur secteur 65W", "Câble de charge USB-C {colour} 1m"],
        "it": ["Caricabatterie USB C 20W {brand}", "Alimentatore {brand} 65W"],
        "es": ["Cargador USB C 20W {brand} carga rápida", "Cable USB C {colour} {brand}"],
        "nl": ["{brand} USB-C oplader 20W", "Snellader {brand} 30W"],
        "pl": ["Ładowarka USB C 20W {brand}", "Kabel USB C {colour}"],
    }),
    ("cat.electrical.plugs_sockets", 1.5, {
        "en": ["Universal Travel Adapter {brand} with USB", "EU to UK Adapter Plug 4-Pack", "{brand} Extension lead 4 way {colour}"],
        "de": ["Reisestecker Adapter Weltweit {brand}", "Steckdosenleiste 5-fach {colour}"],
        "fr": ["Adaptateur de voyage universel {brand}", "Multiprise 4 prises {colour}"],
    }),
    ("cat.toys.magnetic", 1.5, {
        "en": ["Magnetic Balls 216pcs 5mm Neodymium Magnet Balls Desk Toy", "{brand} Magnetic Building Tiles 60pcs for Kids", "Buckyballs style magnet cube puzzle",
               "Fridge Magnets Set of 12 {colour}"],
        "de": ["Magnetkugeln 216 Stück 5mm Neodym Magnete Spielzeug", "{brand} Magnetische Bausteine 64 Teile Kinder", "Kühlschrankmagnete 10er Set"],
        "fr": ["Billes magnétiques 216 pièces 5mm", "{brand} Jeu de construction magnétique 48 pièces", "Aimants de réfrigérateur lot de 12"],
    }),
    ("cat.toys.slime", 1.0, {
        "en": ["Fluffy Slime Kit for Girls 24 Colours {brand}", "Butter Slime 4-Pack Scented"],
        "de": ["Schleim Set für Kinder 12 Farben {brand}", "Fluffy Slime Knete 6er"],
        "fr": ["Kit slime pour enfants {brand} 20 couleurs", "Pâte slime licorne pailletée"],
    }),
    ("cat.toys", 5.0, {
        "en": ["{brand} Wooden Train Set 40 pieces", "Plush Teddy Bear 30cm {colour}", "Remote Control Car 1:18 {brand}", "Water Beads 50000pcs Sensory Play",
               "Board Game Family Edition {brand}", "Toy kitchen with sounds and lights", "Adult collectible figure, not a toy, 1:6 scale replica"],
        "de": ["{brand} Holzeisenbahn 40 Teile", "Plüschtier Teddybär 30cm", "Ferngesteuertes Auto 1:18 {brand}", "Wasserperlen 10000 Stück bunt"],
        "fr": ["Train en bois {brand} 40 pièces", "Peluche ours 30cm {colour}", "Voiture télécommandée 1:18 {brand}", "Perles d'eau 20000 pièces"],
        "it": ["Trenino in legno {brand} 40 pezzi", "Peluche orsetto 30cm"],
        "es": ["Tren de madera {brand} 40 piezas", "Peluche oso 30cm"],
        "nl": ["Houten treinset {brand} 40 delen", "Knuffelbeer 30cm"],
        "pl": ["Drewniana kolejka {brand} 40 elementów", "Pluszowy miś 30cm"],
    }),
    ("cat.ecigarettes", 2.0, {
        "en": ["Disposable Vape 600 Puffs {brand} Blue Razz", "{brand} Vape Pen Starter Kit 2ml", "E-Liquid 10ml 20mg Nic Salt Strawberry",
               "Bubble Glass 5ml Tank Extension", "50mg nic salt e-liquid 30ml", "Vape Kit Pod System {brand} {colour}"],
        "de": ["E-Zigarette Starter Set {brand} 2ml", "Liquid mit Nikotin 10ml 18mg Erdbeere", "Verdampfer {brand} 2ml Tank"],
        "fr": ["Cigarette électronique {brand} kit complet", "E-liquide 10ml 12mg fraise", "Vape jetable 600 puffs {brand}", "Puff 800 bouffées goût menthe"],
        "it": ["Sigaretta elettronica {brand} kit", "Liquido svapo 10ml menta"],
        "es": ["Vapeador desechable {brand} 600 caladas", "Cigarrillo electrónico {brand}"],
        "nl": ["Wegwerp vape 600 puffs {brand}", "E-sigaret starterkit {brand}"],
        "pl": ["E-papieros {brand} zestaw", "Liquid do e-papierosa 10ml"],
    }),
    ("cat.weapons.knives", 1.5, {
        "en": ["{brand} Chef Knife 8 inch Damascus Steel", "Zombie Knife 12 inch with Sheath", "Folding Pocket Knife {brand} {colour}", "Butterfly Knife Trainer Blunt",
               "Knife Sharpener 3-Stage {brand}", "Butter Knife Set of 6"],
        "de": ["{brand} Kochmesser 20cm Damast", "Springmesser Automatik {colour}", "Taschenmesser {brand} 11 Funktionen", "Butterflymesser Trainer stumpf"],
        "fr": ["Couteau de chef {brand} 20cm", "Couteau pliant {brand} {colour}", "Couteau papillon d'entraînement"],
    }),
    ("cat.kitchenware", 3.0, {
        "en": ["{brand} Knife Block Set 6 Knives with Stand", "Non-stick Frying Pan 28cm {brand}", "Kitchen knives set {colour} 5 pieces"],
        "de": ["Messerblock mit 6 Messern {brand}", "Bratpfanne 28cm antihaft"],
        "fr": ["Bloc couteaux 6 pièces {brand}", "Poêle antiadhésive 28cm"],
    }),
    ("cat.weapons.self_defence", 0.5, {
        "en": ["Pepper Spray Self Defence 20ml", "{brand} Stun Gun Torch 2-in-1", "Personal safety alarm keyring {colour}"],
        "de": ["Pfefferspray Tierabwehr 40ml", "Taschenalarm 130dB {colour}"],
    }),
    ("cat.laser_pointers", 1.0, {
        "en": ["Green Laser Pointer 1000mW Burning Laser", "{brand} Laser Pointer for Presentations Class 2", "Cat Laser Toy {colour}", "Laser Level 360 Self-Levelling {brand}"],
        "de": ["Laserpointer grün stark 1000mW", "{brand} Präsentations Laserpointer", "Kreuzlinienlaser {brand} Laser Level"],
        "fr": ["Pointeur laser vert puissant", "{brand} Stylo laser présentation", "Niveau laser rotatif"],
    }),
    ("cat.drones", 1.5, {
        "en": ["{brand} Mini Drone with Camera 4K for Beginners", "FPV Drone Racing Kit", "Drone Propellers Replacement 8pcs", "Drone Landing Pad 75cm"],
        "de": ["{brand} Drohne mit Kamera 4K", "Quadrocopter für Kinder", "Ersatzpropeller Drohne 8 Stück"],
        "fr": ["Drone avec caméra 4K {brand}", "Mini drone pour enfants"],
        "it": ["Drone con telecamera {brand}"], "es": ["Dron con cámara 4K {brand}"], "nl": ["Drone met camera {brand}"], "pl": ["Dron z kamerą {brand}"],
    }),
    ("cat.batteries.lithium", 1.5, {
        "en": ["18650 Battery 3500mAh Rechargeable 4-Pack", "{brand} 21700 Cells 5000mAh Flat Top", "E-Bike Battery 36V 13Ah {brand}", "Battery Case for 18650 cells"],
        "de": ["18650 Akku 3400mAh 4 Stück", "E-Bike Akku 36V {brand}"],
        "fr": ["Batterie 18650 rechargeable lot de 4", "Batterie vélo électrique 36V {brand}"],
    }),
    ("cat.batteries.button", 0.8, {
        "en": ["CR2032 Lithium Coin Cell 10-Pack {brand}", "LR44 Button Battery 20 Pack"],
        "de": ["CR2032 Knopfzelle 10 Stück {brand}"], "fr": ["Pile bouton CR2032 lot de 10"],
    }),
    ("cat.cosmetics", 3.0, {
        "en": ["{brand} Hyaluronic Acid Serum 30ml", "Skin Bleaching Cream with Hydroquinone 4%", "Teeth Whitening Kit 35% Hydrogen Peroxide Gel",
               "PAP Whitening Strips Peroxide Free", "Coloured Contact Lenses Halloween Red", "Ivory White Nail Polish {brand}"],
        "de": ["{brand} Feuchtigkeitscreme 50ml", "Zahnbleaching Gel Set", "Farbige Kontaktlinsen Halloween"],
        "fr": ["Crème hydratante {brand} 50ml", "Crème dépigmentante visage", "Lentilles de couleur cosplay"],
        "it": ["Crema viso {brand} 50ml"], "es": ["Crema hidratante {brand} 50ml"],
    }),
    ("cat.food_supplements", 2.0, {
        "en": ["{brand} Vitamin D3 4000 IU 365 Tablets", "CBD Oil 10% Full Spectrum 10ml", "Yohimbe Bark Extract Capsules", "Turmeric capsules that cure arthritis naturally",
               "Fat Burner DNP Extreme", "Omega 3 Fish Oil {brand} 120 caps"],
        "de": ["{brand} Vitamin D3 Tabletten", "CBD Öl 10% 10ml", "Magnesium Kapseln 400mg"],
        "fr": ["{brand} Vitamine D3 gélules", "Huile CBD 10% 10ml", "Magnésium marin 300mg"],
        "it": ["Olio CBD 5% {brand}"], "es": ["Aceite CBD 10% {brand}"],
    }),
    ("cat.medical_devices", 1.5, {
        "en": ["{brand} Pulse Oximeter Fingertip", "Blood Pressure Monitor Upper Arm {brand}", "Pregnancy Test Strips 20 Pack", "Hearing Aid Batteries Size 312"],
        "de": ["Pulsoximeter {brand} Finger", "Blutdruckmessgerät Oberarm {brand}"],
        "fr": ["Oxymètre de pouls {brand}", "Tensiomètre bras {brand}"],
    }),
    ("cat.childcare", 2.0, {
        "en": ["Amber Teething Necklace for Baby", "{brand} Baby Sleep Positioner Anti Roll", "Baby Monitor with Camera {brand}", "Pushchair rain cover universal"],
        "de": ["Bernsteinkette Baby Zahnungskette", "Babyphone mit Kamera {brand}"],
        "fr": ["Collier d'ambre bébé", "Cale bébé anti-roulis {brand}", "Babyphone caméra {brand}"],
    }),
    ("cat.clothing", 8.0, {
        "en": ["{brand} Women's Satin Dress {colour}", "Men's Cotton T-Shirt {colour} 3-Pack", "Ivory Lace Wedding Dress", "Kids Hoodie with Drawstring {colour}"],
        "de": ["{brand} Damen Kleid {colour}", "Herren T-Shirt Baumwolle {colour}", "Kinder Kapuzenpullover Kordel"],
        "fr": ["Robe femme {brand} {colour}", "T-shirt homme coton {colour}"],
        "it": ["Vestito donna {brand} {colour}"], "es": ["Vestido mujer {brand} {colour}"], "nl": ["Dames jurk {colour}"], "pl": ["Sukienka damska {colour}"],
    }),
    ("cat.jewellery", 1.0, {
        "en": ["Replica Watch Luxury AAA Quality", "{brand} Sterling Silver Necklace", "Antique Ivory Carving Netsuke", "1:1 Copy Designer Bag"],
        "de": ["{brand} Silberkette 925", "Elfenbein Schnitzerei antik"], "fr": ["Collier argent {brand}", "Réplique montre de luxe"],
    }),
    ("cat.electrical.communication", 2.0, {
        "en": ["{brand} Smartphone 128GB {colour}", "Rugged phone with micro USB charging port", "Bluetooth Headphones {brand} {colour}"],
        "de": ["{brand} Smartphone 128GB {colour}", "Bluetooth Kopfhörer {brand}"], "fr": ["Smartphone {brand} 128Go {colour}"],
    }),
    (None, 6.0, {
        "en": ["{brand} Notebook A5 Dotted {colour}", "Garden Hose 30m {brand}", "Yoga Mat 6mm {colour}", "Supercharger Sticker Pack", "Desk Lamp LED {brand}",
               "Contact me on WhatsApp for wholesale price - LED strip", "Scented Candle {colour} {brand}", "CE approved LED bulb 10W"],
        "de": ["{brand} Notizbuch A5 {colour}", "Gartenschlauch 30m", "Yogamatte {colour}", "LED Schreibtischlampe {brand}"],
        "fr": ["Carnet A5 {brand} {colour}", "Tuyau d'arrosage 30m", "Tapis de yoga {colour}", "Lampe de bureau LED {brand}"],
        "it": ["Quaderno A5 {brand}", "Tappetino yoga {colour}"], "es": ["Cuaderno A5 {brand}", "Esterilla yoga {colour}"],
        "nl": ["Notitieboek A5 {brand}", "Yogamat {colour}"], "pl": ["Notatnik A5 {brand}", "Mata do jogi {colour}"],
    }),
]

DESCRIPTIONS = {
    "en": ["Fast delivery from our warehouse.", "High quality, 12 month warranty.", "Please read the safety instructions before use.", ""],
    "de": ["Schneller Versand aus Deutschland.", "Hohe Qualität, 2 Jahre Garantie.", ""],
    "fr": ["Livraison rapide.", "Garantie 2 ans.", ""],
}


def generate_demo_catalogue(path: str | Path, n: int = 20_000, seed: int = 7) -> Path:
    """Write ``n`` demo listings to a CSV file at ``path``; the same seed gives the same file."""
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    markets, market_weights = zip(*MARKETS.items())
    weights = [w for _, w, _ in PRODUCTS]
    sellers = [f"seller-{i:04d}" for i in range(400)]
    # A few large sellers carry much of the catalogue, as on real marketplaces.
    seller_weights = [1.0 / (i + 1) ** 0.8 for i in range(len(sellers))]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "description", "market", "category", "brand", "seller"])
        for i in range(n):
            market = rng.choices(markets, market_weights)[0]
            language = LANGUAGE[market]
            category, _, templates = rng.choices(PRODUCTS, weights)[0]
            options = templates.get(language) or templates["en"]
            # Cross-border sellers list in English on every market.
            if language != "en" and rng.random() < 0.15:
                options = templates["en"]
                language = "en"
            brand = rng.choice(BRANDS)
            colours = COLOURS.get(language, COLOURS["en"])
            title = rng.choice(options).format(brand=brand, colour=rng.choice(colours))
            description = rng.choice(DESCRIPTIONS.get(language, DESCRIPTIONS["en"]))
            # Some catalogues leave the category blank; the matcher then judges on text alone.
            shown_category = category if rng.random() > 0.1 else ""
            seller = rng.choices(sellers, seller_weights)[0]
            writer.writerow([f"L{i:07d}", title, description, market, shown_category or "", brand, seller])
    log.info("wrote %d demo listings to %s", n, path)
    return path
