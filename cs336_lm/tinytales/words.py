"""Word banks for the tinytales story generator: the people, animals, places, things and feelings of its world.

Everything here is plain data. Single words are kept in whitespace-separated strings (split once at import);
phrases that carry more than one word are tuples. ``cs336_lm.tinytales.stories`` draws from these tables to fill
the sentence templates of ``cs336_lm.tinytales.plots``; growing a table here grows the corpus vocabulary.
"""


def _words(text: str) -> list[str]:
    """The whitespace-separated words of a text block, in order."""
    return text.split()


# fmt: off

GIRL_NAMES = _words("""
Mia Lily Emma Ava Zoe Ruby Ella Chloe Grace Nora Lucy Hannah Anna Sara Maya Rosa Ivy Hazel Daisy Poppy Willow
Luna Stella Clara Alice Olive Violet Iris Lena Nina Tara Jade Amber Holly Molly Polly Sophie Megan Kayla Leah
Layla Aisha Fatima Priya Meera Sana Yuki Hana Mei Lin Kira Noor Amira Zara Elena Sofia Lucia Carmen Paloma
Frida Ingrid Astrid Freya Greta Heidi Marta Olga Tanya Vera Nadia Rita Gina Bella Penny Josie Tessa Fiona
Maggie Abby Beth Cora Dora Edie Faye Gemma Hattie Isla Jenny Katie Lottie Mabel Nell Opal Pearl Queenie Rosie
Sadie Tilly Una Wren Xena Yara Zelda Bonnie Celia Delia Erin Flora Gwen Hope Joy June May Kim Nia Ada Bea Eve
Liv Mae Pia Tess Lola Mila Nola Orla Rhea Sia Thea Vida Zia Ayla Dina Esme Lulu Mina
""")

BOY_NAMES = _words("""
Tom Ben Sam Max Leo Jack Noah Liam Owen Finn Luke Jake Eli Ezra Adam Theo Hugo Oscar Felix Jasper Milo Arlo
Otis Rufus Toby Teddy Ollie Alfie Archie Harry Henry George Charlie Freddie Louis Lucas Mateo Diego Carlos
Pablo Rafael Tomas Marco Luca Enzo Paolo Hans Lars Sven Nils Erik Ivan Pavel Omar Karim Yusuf Ali Ravi Arjun
Dev Kiran Hiro Kenji Ren Kai Jin Chen Wei Tariq Kofi Kwame Jamal Malik Andre Tyler Wyatt Caleb Dylan Ethan
Gavin Isaac Joel Kevin Levi Mason Nathan Peter Quinn Ryan Simon Victor Wesley Zack Bobby Danny Eddie Frankie
Gus Hank Iggy Jimmy Ned Pete Ricky Stan Vince Walt Abe Bo Cal Dex Ike Jay Kit Lou Moe Rex Ted Zed Ari Bram
Cody Drew Emil Ford Glen Ivo Jonah Koa Lenny Nico Remy Seth Tobin Umar Vito Wade
""")

SURNAMES = _words("""
Lopez Kim Green Brown Patel Nguyen Smith Garcia Rossi Muller Novak Okafor Mensah Tanaka Suzuki Chen Singh Ali
Hassan Cohen Levy Silva Santos Costa Dubois Martin Bernard Jensen Larsen Berg Olsen Popov Ivanova Khan Ahmed
Haddad Moreno Romero Diaz Ortiz Reyes Castro Flores Rivera Hughes Price Fisher Baker Cooper Turner Parker
Walker Wood Hill Stone Brooks Rivers Marsh Fields Meadows Bloom Finch Wren Robin Hart Frost Snow Winter Summer
Gold Silver Penny Button Pepper Honey Maple Willow Birch Rowe Lane Wells Moss Fox Crane
""")

PET_NAMES = _words("""
Pip Biscuit Pepper Muffin Peanut Cookie Sprinkles Noodle Waffles Pickles Button Bubbles Ziggy Scout Rocket
Comet Twinkle Sparky Fuzzy Whiskers Mittens Socks Patches Freckles Ginger Cinnamon Nutmeg Clover Thistle
Bramble Acorn Hazelnut Pebble Puddle Snowball Marshmallow Jellybean Toffee Fudge Caramel Mango Kiwi Plum Berry
Dumpling Pumpkin Tumble Wiggles Bounce Flutter Dot Dash Blip Zippy Squeak Nibbles Crumbs Honeybee Moonbeam
Sunny Stormy Breezy Misty Dusty Rusty Smudge Inky Sooty Tiger Shadow Bandit Captain Duke Duchess Princess
Buttercup Daffodil Poppyseed Sesame Truffle Popcorn Pretzel Tater Beans Gizmo Widget Bolt Echo
""")

ANIMALS = _words("""
fox rabbit bunny squirrel hedgehog mouse badger otter beaver raccoon deer fawn bear cub wolf puppy dog kitten
cat pony horse donkey goat lamb sheep cow calf pig piglet duck duckling goose chick hen rooster owl robin
sparrow bluebird parrot penguin seal whale dolphin turtle frog toad lizard snail ladybug butterfly bee
dragonfly caterpillar spider ant cricket firefly elephant giraffe zebra lion tiger monkey panda koala kangaroo
hippo rhino camel llama alpaca sloth lemur meerkat mole hamster gerbil ferret chipmunk porcupine skunk moose
walrus crab lobster octopus starfish seahorse puffin flamingo pelican peacock swan heron crow magpie
woodpecker hummingbird bat beetle grasshopper dinosaur dragon unicorn
""")

TRAITS = _words("""
curious brave shy kind cheerful gentle clever silly playful quiet friendly busy happy sleepy bouncy careful
helpful thoughtful lively cheeky bright sweet funny hopeful patient proud polite noisy tiny little small young
eager daring dreamy giggly jolly lucky merry nimble plucky sunny spirited sprightly chatty bold honest
""")

# (job, what they do, a thing they carry)
PROFESSIONS: tuple[tuple[str, str, str], ...] = (
    ("baker", "baked warm bread for the whole town", "a basket of buns"),
    ("farmer", "grew corn and pumpkins in the big field", "a bucket of apples"),
    ("firefighter", "drove the shiny red fire truck", "a long ladder"),
    ("doctor", "helped sick people feel better", "a little black bag"),
    ("nurse", "cared for people at the hospital", "a box of bandages"),
    ("teacher", "taught the children to read and count", "a stack of books"),
    ("librarian", "knew where every book in the library lived", "a cart of books"),
    ("mail carrier", "brought letters and parcels to every house", "a heavy mail bag"),
    ("fisherman", "sailed out to sea every morning", "a tangled net"),
    ("gardener", "planted flowers in the town square", "a watering can"),
    ("painter", "painted pictures of the sea and sky", "a brush and a pot of paint"),
    ("builder", "built houses, bridges and fences", "a hammer and some nails"),
    ("carpenter", "made chairs and tables out of wood", "a saw and a pencil"),
    ("pilot", "flew big planes high above the clouds", "a pair of goggles"),
    ("sailor", "steered a boat across the bay", "a coil of rope"),
    ("zookeeper", "fed the animals at the zoo", "a bucket of fish"),
    ("vet", "looked after sick and hurt animals", "a soft blanket"),
    ("police officer", "kept the streets safe", "a shiny whistle"),
    ("chef", "cooked soup and pasta at the corner cafe", "a wooden spoon"),
    ("musician", "played songs in the park on sunny days", "an old guitar"),
    ("tailor", "sewed coats, hats and dresses", "a needle and thread"),
    ("shopkeeper", "sold toys and candy in a little shop", "a jar of sweets"),
    ("beekeeper", "looked after the bees and their honey", "a jar of honey"),
    ("clockmaker", "fixed old clocks in a tiny workshop", "a tiny screwdriver"),
    ("lighthouse keeper", "kept the big lamp burning at night", "a bright lantern"),
    ("astronaut", "had flown all the way to the moon", "a silver helmet"),
    ("scientist", "studied stars, rocks and bugs", "a magnifying glass"),
    ("bus driver", "drove the yellow bus around town", "a ring of keys"),
    ("dancer", "danced on the big stage at the theater", "a pair of soft shoes"),
    ("potter", "shaped bowls and cups out of clay", "a lump of wet clay"),
    ("knitter", "knitted scarves for everyone she knew", "a ball of blue yarn"),
    ("park ranger", "looked after the forest and its trails", "a map of the woods"),
    ("inventor", "built strange and wonderful machines", "a box of springs and gears"),
    ("ice cream seller", "sold ice cream from a little cart", "a cone with three scoops"),
    ("shoemaker", "mended boots and shoes", "a pair of laces"),
    ("magician", "did tricks with cards and hats", "a tall black hat"),
)

ADULTS = (
    "Mom", "Dad", "Grandma", "Grandpa", "Nana", "Papa", "Granny", "Aunt May", "Uncle Joe", "Aunt Rosa",
)

HOMES = (
    "a small house with a red door", "a yellow cottage at the edge of the woods",
    "a tall apartment building in the busy city", "a farmhouse with a big barn", "a cozy burrow under an old oak tree",
    "a little blue house by the sea", "a hollow log beside the river", "a tree house with a rope ladder",
    "a houseboat on a quiet canal", "a round house with a green roof", "a snug den under the hill",
    "a cabin in the snowy mountains", "a nest high in a pine tree", "a busy street full of shops",
    "a village with a stone bridge", "a windmill on the top of a hill", "a town where the trains rumbled past",
    "a house with a garden full of roses",
)

# (place, a detail about it)
PLACES: tuple[tuple[str, str], ...] = (
    ("the park", "where the swings creaked in the wind"),
    ("the beach", "where the waves rolled over the smooth pebbles"),
    ("the forest", "where the tall trees whispered to each other"),
    ("the meadow", "where wild flowers grew as high as your knees"),
    ("the playground", "with a slide that was shaped like a snake"),
    ("the garden", "where tomatoes and beans climbed up little poles"),
    ("the pond", "where ducks paddled between the lily pads"),
    ("the river", "where the water sparkled over the rocks"), ("the lake", "where the water was as still as glass"),
    ("the market", "where people sold fruit, cheese and flowers"),
    ("the library", "where the shelves went all the way up to the ceiling"),
    ("the zoo", "where the giraffes nibbled leaves from the tallest trees"),
    ("the farm", "where the cows mooed and the hens clucked"),
    ("the school", "with a bright red door and a big clock"),
    ("the bakery", "where the air smelled of sugar and warm bread"),
    ("the harbor", "where little boats bobbed up and down"), ("the hill", "where you could see the whole town below"),
    ("the orchard", "where apples hung low on the branches"),
    ("the museum", "where old bones and shiny stones sat in glass boxes"),
    ("the train station", "where the trains puffed and whistled"),
    ("the campsite", "where the tents stood in a circle"), ("the old barn", "where the hay was piled high"),
    ("the backyard", "where a big maple tree gave lots of shade"),
    ("the toy shop", "where teddy bears sat in the window"),
    ("the cave", "where drops of water dripped from the roof"),
    ("the island", "where palm trees swayed in the breeze"), ("the jungle", "where vines hung from every branch"),
    ("the desert", "where the sand was warm and golden"), ("the mountain", "where the air was cool and fresh"),
    ("the valley", "where a little stream wound between the hills"), ("the swamp", "where frogs sang all night long"),
    ("the fair", "where a merry-go-round spun and played music"),
    ("the circus tent", "where clowns juggled and acrobats flew"),
    ("the aquarium", "where fish of every color swam past the glass"),
    ("the greenhouse", "where warm air and green plants filled every corner"),
    ("the lighthouse", "where a spiral staircase led to the lamp"),
    ("the castle", "where flags waved on the tall towers"), ("the pier", "where seagulls waited for crumbs"),
    ("the skating rink", "where the ice shone like a mirror"), ("the bridge", "where you could watch the boats go by"),
    ("the village square", "where a fountain splashed in the middle"),
    ("the woods", "where mushrooms grew in little rings"), ("the field", "where the grass rippled like the sea"),
    ("the attic", "where old trunks were full of forgotten things"),
    ("the kitchen", "where a pot of soup bubbled on the stove"),
    ("the swimming pool", "where the water was cool and blue"),
)

OBJECTS: tuple[str, ...] = (
    "kite", "ball", "teddy bear", "toy boat", "toy train", "doll", "music box", "red wagon", "scooter", "bike", "drum",
    "whistle", "yo-yo", "spinning top", "jump rope", "marble", "crayon", "paintbrush", "storybook", "diary", "hat",
    "scarf", "mitten", "sock", "shoe", "backpack", "lunch box", "umbrella", "lantern", "flashlight", "compass", "map",
    "telescope", "magnifying glass", "seashell", "feather", "pinecone", "acorn", "ribbon", "necklace", "bracelet",
    "ring", "crown", "key", "coin", "button", "blanket", "pillow", "cup", "bowl", "spoon", "jar", "basket", "bucket",
    "shovel", "watering can", "flower pot", "robot", "rocket", "puzzle", "balloon", "bell", "harmonica", "flute",
    "violin", "guitar", "tambourine", "sticker", "stamp", "postcard", "letter", "photo", "clock", "watch", "glove",
    "boot", "sandal", "bucket hat", "rubber duck", "toy car", "dinosaur toy", "stuffed bunny", "snow globe", "pebble",
    "crystal", "wand", "cape", "mask", "book of fairy tales", "sketchbook", "pencil case", "gift box",
)

OBJ_ADJ = _words("""
shiny old new tiny big little soft bright sparkly fluffy smooth round heavy light special favorite lucky magic
precious squeaky wobbly fuzzy striped spotted glittery dusty rusty polished painted handmade small colorful
cozy warm silky bumpy crinkly secret golden silver wooden woolen velvet patchwork
""")

COLORS = _words("""
red blue green yellow orange purple pink white black brown gray golden silver violet turquoise crimson scarlet
lavender teal navy cream peach mint lemon rosy amber maroon
""")

FOODS: tuple[str, ...] = (
    "apple pie", "honey cake", "carrot soup", "cheese sandwich", "strawberry jam", "blueberry muffins",
    "chocolate cookies", "banana bread", "lemonade", "warm milk", "hot cocoa", "pancakes", "waffles", "spaghetti",
    "vegetable stew", "rice pudding", "popcorn", "pumpkin pie", "cherry tart", "fruit salad", "oatmeal",
    "toast with butter", "noodle soup", "peach cobbler", "ginger biscuits", "cinnamon rolls", "corn on the cob",
    "grilled fish", "tomato soup", "plum cake", "acorn bread", "clover tea", "berry smoothie", "mashed potatoes",
    "peas and carrots", "a big red apple", "a bowl of cherries", "sugar cookies", "a slice of watermelon",
    "cupcakes with sprinkles", "dumplings", "tacos", "sushi", "pizza", "a bag of peanuts", "a jar of honey",
    "fresh bread", "hot soup", "a crunchy pear", "a juicy orange",
)

GOOD_FEELINGS = _words("""
happy glad proud excited cheerful joyful delighted thrilled calm grateful hopeful brave safe cozy warm pleased
relieved amazed jolly content
""")

BAD_FEELINGS = _words("""
sad worried scared upset lonely grumpy cross nervous frightened gloomy tired confused sorry shy jealous angry
disappointed anxious puzzled
""")

WEATHER: tuple[str, ...] = (
    "The sun was warm and bright.", "Fluffy white clouds drifted across the blue sky.",
    "A soft breeze made the leaves dance.", "It had rained all night, and the puddles shone like mirrors.",
    "Snow lay thick and white on the ground.", "The morning was misty and quiet.",
    "The wind was blowing hard and the trees swayed.", "Golden leaves were falling from the trees.",
    "The air smelled of rain and fresh grass.", "A rainbow stretched across the sky.",
    "It was so hot that even the bees moved slowly.", "Frost sparkled on every window.",
    "Gray clouds rolled in from the sea.", "The first spring flowers were peeking out of the ground.",
    "A thin fog hid the tops of the hills.", "The stars were twinkling in the dark sky.",
    "The moon was big and round and silver.", "Raindrops pattered softly on the roof.",
    "The sky was pink and orange as the sun went down.", "Icicles hung from the edge of the roof.",
)

TIMES = (
    "One day", "One sunny morning", "One rainy afternoon", "One snowy day", "On a warm summer evening",
    "One windy day", "Early one morning", "On a chilly autumn day", "One bright spring morning", "Late one night",
    "On a foggy morning", "One Saturday", "On the first day of spring", "On the last day of summer",
    "One cloudy afternoon", "On a quiet Sunday", "One frosty morning", "After breakfast one day",
    "On a lazy afternoon", "One stormy evening",
)

OPENERS = (
    "Once upon a time", "Long ago", "Not so long ago", "Once", "A long time ago", "Once upon a time",
)

FLOWERS = _words("""
daisy tulip rose sunflower daffodil lily violet poppy dandelion bluebell buttercup lavender marigold pansy
orchid lilac peony clover snowdrop
""")

TREES = _words("""
oak maple pine willow birch apple cherry elm chestnut palm cedar plum
""")

BIRDS = _words("""
robin sparrow blackbird owl seagull crow wren finch pigeon duck goose swallow lark
""")

BUGS = _words("""
ladybug beetle butterfly bee ant cricket grasshopper firefly moth snail caterpillar dragonfly
""")

SOUNDS = (
    "a loud crash", "a soft squeak", "a strange thump", "a tiny tapping", "a long creak", "a funny whistle",
    "a low rumble", "a gentle scratching", "a sharp bang", "a sad little cry", "a buzzing hum",
    "a rustle in the bushes", "a splash in the water", "a jingle like bells", "a rattle by the door",
    "a hoot from the dark", "a crunch of footsteps", "a flapping of wings", "a clatter of pots",
)

# Things a character plans to do (bare verb phrases).
ACTIVITIES: tuple[str, ...] = (
    "fly a kite", "build a sandcastle", "have a picnic", "go fishing", "paint a picture", "plant seeds", "ride a bike",
    "go swimming", "play hide and seek", "climb a tree", "collect shells", "pick berries", "bake cookies",
    "build a snowman", "go sledding", "watch the boats", "read stories", "play catch", "jump in puddles",
    "look for frogs", "make a daisy chain", "feed the ducks", "go camping", "look at the stars", "dig for treasure",
    "play tag", "sail a paper boat", "make a fort out of blankets", "count the clouds", "skip stones",
    "draw with chalk", "dance to music", "play the drum", "go skating",
)

EVENTS = (
    ("the spring fair", "there would be games, rides and a prize for the biggest pumpkin"),
    ("a birthday party", "there would be cake, balloons and a big surprise"),
    ("the school play", "everyone would dress up and sing on the stage"),
    ("the harvest festival", "the whole town would share soup and bread"),
    ("the big race", "the fastest runner would win a golden ribbon"),
    ("the kite festival", "the sky would be full of kites of every color"),
    ("the talent show", "children would sing, dance and do magic tricks"),
    ("the winter market", "there would be lights, music and hot drinks"),
    ("the sandcastle contest", "the best castle would win a shiny trophy"),
    ("the parade", "a band would march down the main street"),
    ("the science fair", "children would show their clever inventions"),
    ("the baking contest", "the tastiest cake would win a blue ribbon"),
    ("the lantern walk", "everyone would carry glowing lanterns through the streets"),
    ("the garden show", "people would bring their prettiest flowers"),
)

MOVES = _words("""
ran hurried raced dashed skipped hopped jumped walked wandered tiptoed marched zoomed rushed scampered trotted
crept strolled darted galloped waddled
""")

ADVERBS = _words("""
quickly slowly softly gently carefully quietly happily sadly bravely proudly shyly loudly kindly suddenly
finally eagerly calmly sleepily nervously cheerfully
""")

SAY = _words("""
said asked called cried shouted whispered replied answered laughed giggled exclaimed sighed
""")

EXCLAIM = (
    "Wow", "Oh no", "Look", "Hooray", "Oh my", "Yay", "Oh dear", "Hello", "Goodness", "Hey", "Whoa",
)

HIDING_SPOTS = (
    "under a pile of leaves", "inside an old boot", "behind the big flower pot", "under the kitchen table",
    "in the basket with the laundry", "on top of the bookshelf", "in the dog's bed", "under a bush",
    "inside a hollow log", "behind the curtain", "in the pocket of a coat", "under the stairs",
    "next to the garden gate", "in a bird's nest", "under the sofa cushions", "in the sandbox", "beside the pond",
    "in the toy chest", "behind the shed", "on the windowsill",
)

# (the thing feared, what facing it looks like)
FEARS = (
    ("the dark", "turn off the light and lie still"), ("thunder", "listen to the storm without hiding"),
    ("deep water", "swim to the end of the pool"), ("the tall slide", "climb to the top and slide down"),
    ("big dogs", "say hello to the neighbor's dog"), ("the first day of school", "walk through the classroom door"),
    ("singing in front of people", "sing a song on the stage"), ("the high diving board", "jump off into the water"),
    ("spiders", "watch a spider spin its web"), ("the big waves", "paddle in the sea"),
    ("the noisy vacuum cleaner", "stay in the room while it hummed"), ("going to the dentist", "sit in the big chair"),
    ("climbing trees", "climb up to the lowest branch"), ("the old creaky bridge", "walk across it"),
)

# (skill to learn, how it goes wrong, how it looks when learned)
SKILLS = (
    ("ride a bike", "wobbled and fell into the grass", "pedaled all the way down the path"),
    ("swim", "splashed and swallowed some water", "kicked and floated across the pool"),
    ("whistle", "only blew air with no sound", "whistled a happy tune"),
    ("tie shoelaces", "made a big knot", "tied a perfect bow"),
    ("read", "mixed up the letters", "read a whole page out loud"),
    ("skate", "slipped and sat down on the ice", "glided in a big circle"),
    ("juggle", "dropped the balls everywhere", "kept three balls in the air"),
    ("play the piano", "pressed all the wrong keys", "played a little song"),
    ("jump rope", "got tangled in the rope", "jumped twenty times in a row"),
    ("fly", "flapped and landed in a bush", "soared over the treetops"),
    ("bake bread", "made the dough too sticky", "baked a golden loaf"),
    ("do a cartwheel", "tumbled onto the grass", "spun over like a wheel"),
)

# (animal in trouble, the trouble, how it is solved)
RESCUES = (
    ("a baby bird", "had fallen out of its nest", "lifted it gently back into the nest"),
    ("a kitten", "was stuck high up in a tree", "brought a ladder and carried it down"),
    ("a turtle", "was lying on its back and could not turn over", "turned it over very carefully"),
    ("a duckling", "had lost its mother", "followed the quacking until they found her"),
    ("a puppy", "had its paw caught under a branch", "lifted the branch away"),
    ("a butterfly", "was trapped behind a window", "opened the window wide"),
    ("a hedgehog", "was tangled in some string", "snipped the string loose"),
    ("a little fish", "was stranded in a puddle", "carried it back to the pond in a bucket"),
    ("a lamb", "was stuck in the mud", "pulled it out with a long rope"),
    ("a bee", "was tired and could not fly", "gave it a drop of sugar water"),
    ("an owl", "had hurt its wing", "wrapped it in a towel and took it to the vet"),
    ("a frog", "was stuck in a bucket", "tipped the bucket over"),
)

# (thing to make, its mishap)
MAKINGS = (
    ("a birthday cake", "the dog jumped up and knocked it off the table"),
    ("a birdhouse", "the roof fell off"),
    ("a painting", "a cup of water spilled all over it"),
    ("a card", "the glue made all the pages stick together"),
    ("a sandcastle", "a big wave washed it away"),
    ("a necklace of beads", "the string broke and the beads rolled everywhere"),
    ("a paper boat", "it got soggy and sank"),
    ("a snowman", "the sun came out and it began to melt"),
    ("a blanket fort", "it fell down on top of them"),
    ("a pie", "they forgot the sugar"),
    ("a kite", "the wind tore the paper"),
    ("a scarecrow", "the crows stole its hat"),
    ("a flower crown", "the flowers wilted in the heat"),
    ("a tower of blocks", "it toppled over with a crash"),
)

# (thing broken by mistake, how it broke)
BREAKABLES = (
    ("vase", "knocked it with a ball"), ("window", "threw a stone too far"), ("teapot", "bumped the table"),
    ("lamp", "tripped over its cord"), ("plate", "let it slip from wet hands"), ("clock", "dropped it"),
    ("flower pot", "swung a stick too hard"), ("mirror", "bumped it with a broom"), ("toy plane", "stepped on it"),
    ("cookie jar", "reached too high"), ("fence", "leaned on it"),
)

# (treasure to find on a quest, where it was said to be)
QUESTS = (
    ("the end of the rainbow", "past the hills"),
    ("the biggest pumpkin in the land", "on the other side of the valley"),
    ("a golden feather", "at the top of the tallest tree"), ("a wishing well", "deep in the forest"),
    ("a secret garden", "behind the old stone wall"), ("a lost treasure chest", "on the far side of the island"),
    ("the moon's reflection", "in the middle of the lake"), ("the oldest tree in the forest", "beyond the stream"),
    ("a singing stone", "at the bottom of the cave"), ("a silver key", "somewhere in the castle"),
)

OBSTACLES = (
    "a fast river with no bridge", "a thick bramble hedge", "a steep hill covered in mud", "a dark tunnel",
    "a grumpy goose that would not move", "a wide field of tall grass", "a fallen tree across the path",
    "a fence with a locked gate", "a puddle as big as a pond", "a rope bridge that swayed in the wind",
)

MORALS = (
    "Being kind is the best thing you can be.", "Friends are the best treasure of all.",
    "If you keep trying, you can do hard things.", "Telling the truth is always the right thing to do.",
    "Sharing makes everyone happy.", "Being brave does not mean you are never scared.",
    "Helping others makes your own heart feel warm.", "Sometimes the best plans are the ones you did not plan.",
    "A little patience goes a long way.", "Everyone needs a helping hand sometimes.",
    "Saying sorry can fix more than you think.", "The world is full of surprises if you look closely.",
    "Home is wherever the people you love are.", "Working together makes big jobs small.",
)

# --- More of the world: these tables widen the vocabulary of the corpus. ---

MORE_GIRL_NAMES = _words("""
Adele Agnes Alma Anya Beatrix Bianca Brenda Camila Cecily Dahlia Daphne Eliza Elsie Estella Etta Fern Gloria
Harriet Imogen Inez Juno Lark Leona Lorna Marigold Matilda Minnie Myra Nettie Odette Petra Phoebe Primrose
Rosalind Sabine Selma Sylvie Tamsin Ursula Valentina Winifred Yolanda Zinnia Aurora Calla Delphine Ember
""")

MORE_BOY_NAMES = _words("""
Alfred Ambrose Barnaby Bertie Casper Cedric Clement Cyrus Dmitri Edmund Elmer Fabian Gideon Horace Ignatius
Jericho Leopold Lionel Magnus Mortimer Nestor Orson Percy Quentin Reginald Rupert Silas Tobias Ulysses Vernon
Wilbur Xavier Yannick Zephyr Angus Basil Cosmo Dorian Ferris Gregor Hamish Ingo Jarvis Leif
""")

MORE_ANIMALS = _words("""
armadillo anteater bison buffalo caribou cheetah coyote dormouse gazelle gecko gorilla hyena iguana jaguar
leopard lynx mongoose narwhal newt ocelot orangutan ostrich panther platypus polecat quail reindeer salamander
stork tapir toucan vole wombat yak chameleon albatross kingfisher nightingale partridge pheasant robin
tortoise
""")

MORE_TRAITS = _words("""
adventurous artistic bashful clumsy cuddly determined energetic fearless forgetful generous graceful grumbly
imaginative inventive joyful mischievous modest musical nosy organized peaceful quick quirky restless sensible
sleepyheaded speedy stubborn tidy tireless wise whimsical wonderful zany dainty fluffy
""")

MORE_ADJ = _words("""
gleaming twinkly crumpled feathery glowing knobbly lumpy marbled mottled pearly prickly rumpled satiny
scratchy shimmering slippery speckled sturdy tattered velvety wrinkled enormous teeny gigantic ancient brand-
new chipped dented faded freckled frilly gilded jeweled lacy lopsided mysterious peculiar quaint
""")

MORE_OBJECTS = (
    "accordion", "anchor", "birdcage", "bookmark", "boomerang", "butterfly net", "candle", "chess set", "cuckoo clock",
    "dollhouse", "easel", "fishing rod", "globe", "hammock", "hourglass", "jigsaw", "kaleidoscope", "ladder", "locket",
    "magnet", "microscope", "mirror", "notebook", "origami crane", "paper lantern", "pinwheel", "piggy bank", "quilt",
    "raincoat", "rocking horse", "sailboat model", "skateboard", "sled", "slingshot", "teapot", "thimble", "tricycle",
    "trumpet", "walkie-talkie", "weathervane", "wind chime", "xylophone", "pogo stick", "treasure chest",
    "birthday candle",
)

MORE_FOODS = (
    "apricot jam", "baked beans", "blackberry crumble", "buttered corn", "carrot cake", "cheese crackers",
    "coconut macaroons", "cranberry juice", "custard tart", "egg sandwiches", "fig rolls", "gingerbread",
    "hazelnut spread", "lentil soup", "mango slices", "meatballs", "mint tea", "oat biscuits", "omelet",
    "peanut butter toast", "pineapple rings", "porridge", "potato salad", "raspberry sorbet", "rhubarb pie",
    "shortbread", "spinach pie", "strawberry milkshake", "sweet potato fries", "vanilla pudding",
)

MORE_PLACES = (
    ("the windmill", "whose sails turned slowly in the breeze"),
    ("the bamboo grove", "where the stalks clicked and clacked together"),
    ("the sunflower field", "where the flowers turned their faces to the sun"),
    ("the old mill pond", "where a water wheel splashed all day"),
    ("the rooftop garden", "where bees buzzed between the pots of herbs"),
    ("the ferry dock", "where ropes creaked and gulls squawked"),
    ("the pumpkin patch", "where orange pumpkins sat fat and round"),
    ("the rock pools", "where crabs scuttled under seaweed"),
    ("the ice cream parlor", "where there were forty flavors in a long glass case"),
    ("the observatory", "where a giant telescope pointed at the sky"),
    ("the bookshop", "where a cat slept on the counter"), ("the waterfall", "where mist drifted up like smoke"),
)

MORE_ACTIVITIES = (
    "build a raft", "fold paper airplanes", "plant a sunflower", "blow bubbles", "knit a scarf", "press flowers",
    "go bird watching", "make a mud pie", "race toy cars", "look for fossils", "play hopscotch", "juggle oranges",
    "make a puppet show", "roll down the hill", "catch snowflakes", "build a bird feeder", "write a letter",
    "practice the trumpet", "ride the merry-go-round",
)

CLOTHES = (
    "raincoat", "woolly sweater", "straw hat", "pair of rubber boots", "striped scarf", "pair of overalls",
    "knitted cap", "pair of mittens", "polka-dot dress", "denim jacket", "pair of sneakers", "bow tie",
    "cardigan with big buttons", "pair of pajamas", "hooded cloak", "pair of sunglasses", "baseball cap",
    "fleece vest", "pair of slippers", "apron", "tutu", "pair of suspenders", "bobble hat", "poncho",
)

VEHICLES = (
    "tractor", "fire truck", "ice cream van", "steam train", "hot air balloon", "sailboat", "tugboat",
    "double-decker bus", "garbage truck", "bicycle with a bell", "motorcycle", "cement mixer", "helicopter", "rowboat",
    "canoe", "delivery van", "tram", "scooter", "horse and cart", "submarine",
)

DREAMS = (
    "sail all the way around the world", "live in a castle made of glass", "swim with the whales",
    "fly a rocket to the moon", "open a bakery that sold only pies", "find a real dinosaur bone",
    "climb the highest mountain", "write a book full of pictures", "become a famous inventor",
    "ride an elephant through the jungle", "build a house up in the clouds", "play the violin in an orchestra",
    "discover a brand-new star", "grow the biggest carrot in the world", "explore the bottom of the ocean",
    "drive a steam train across the country", "paint a mural on the town hall", "visit every zoo on Earth",
)

SCENES: tuple[str, ...] = (
    "A heron stood on one leg in the reeds, waiting patiently for a fish.",
    "Ripe blackberries glistened in the hedgerow.", "Somewhere a woodpecker was drumming on a hollow trunk.",
    "Dew drops trembled on a spider's web like tiny pearls.",
    "A squirrel scolded them from a branch, flicking its bushy tail.",
    "The chimney pots puffed little gray clouds into the sky.", "Dandelion seeds floated past like fairy parachutes.",
    "A tugboat hooted far out in the harbor.", "The church bell chimed twelve times for noon.",
    "Cows lay in the shade of a hawthorn hedge, chewing slowly.", "A kingfisher flashed past, bright as a jewel.",
    "The smell of freshly cut hay drifted over the fence.", "Pine needles crunched softly underfoot.",
    "A lazy bumblebee bumbled from clover to clover.", "The town clock ticked loudly above the square.",
    "Marbles of hail bounced on the garden path and melted away.", "Mossy stones lined the edge of the little brook.",
    "A line of ants carried crumbs back to their nest.",
    "The lighthouse blinked its slow, steady beam across the water.",
    "Washing flapped on the clothesline like a row of flags.", "Frogs croaked a bumpy chorus from the rushes.",
    "The baker's window was full of crusty loaves and sticky buns.",
    "A paper kite was tangled high in a chestnut tree.", "The smell of cinnamon floated out of a kitchen window.",
    "Acorns pattered down whenever the wind shook the branches.", "A rowboat rocked gently against the wooden jetty.",
    "Swallows swooped low over the water, catching midges.",
    "The gravel path crunched under the wheels of a wheelbarrow.",
    "Icy puddles cracked like glass when they stepped on them.",
    "Fireflies blinked on and off between the tall grasses.",
)

MORE_SCENES = (
    "A fishing boat chugged home with gulls wheeling behind it.", "The old gate squeaked on its rusty hinges.",
    "Pumpkins glowed orange on every doorstep.", "A snail left a silvery trail across the flagstones.",
    "The scent of lilacs hung heavy in the warm air.", "A goat was trying to nibble a farmer's straw hat.",
    "Sleepy ducks tucked their beaks under their wings.", "The bakery bell jingled each time someone opened the door.",
    "A scarecrow in a patched jacket guarded the cabbages.", "Thistles nodded their purple heads along the ditch.",
    "A barge loaded with timber drifted down the canal.", "The wind chimes on the porch tinkled a tune.",
    "Puffy cumulus clouds piled up like mountains of whipped cream.",
    "Bats flitted around the steeple as the twilight deepened.",
    "An owl hooted twice from the orchard, then fell silent.", "Crickets chirped in the long grass by the road.",
    "A fox trotted along the hedge, its tail like a flame.", "Steam curled up from a mug of cocoa on the windowsill.",
    "Seaweed lay in tangles along the high-tide line.", "The cobblestones were slick and shiny after the shower.",
    "A hot air balloon drifted silently over the rooftops.",
    "The greengrocer was stacking oranges into a tall pyramid.", "Children's laughter echoed from the schoolyard.",
    "The river gurgled and chuckled over its pebbles.", "A rusty bicycle leaned against the post office wall.",
    "Sparrows squabbled over breadcrumbs on the pavement.", "A hedgehog snuffled among the fallen apples.",
    "Snowflakes settled on the fence posts like little caps.", "The ferry's horn boomed across the bay.",
    "Tall foxgloves swayed beside the garden wall.",
)

MORE_PROFESSIONS = (
    ("blacksmith", "hammered horseshoes on a glowing anvil", "a pair of tongs"),
    ("weaver", "wove bright rugs on a wooden loom", "a spool of thread"),
    ("glassblower", "blew glass into bottles and bubbles", "a long metal pipe"),
    ("cheesemaker", "made round yellow cheeses", "a wheel of cheese"),
    ("puppeteer", "put on puppet shows for the children", "a puppet with a red nose"),
    ("balloon seller", "sold balloons at the fair", "a bunch of balloons"),
    ("photographer", "took pictures of weddings and birthdays", "a big camera"),
    ("lifeguard", "watched the swimmers at the beach", "a red float"),
    ("mechanic", "fixed cars and tractors in a greasy garage", "a big wrench"),
    ("florist", "arranged flowers in the shop on the corner", "a bunch of tulips"),
    ("jeweler", "polished rings and necklaces", "a velvet box"),
    ("plumber", "fixed leaky pipes all over town", "a long pipe wrench"),
    ("sculptor", "carved statues out of marble", "a tiny chisel"),
    ("storyteller", "told stories by the fire every winter", "a book of old legends"),
    ("hairdresser", "cut hair in a shop with a striped pole", "a pair of scissors"),
    ("window cleaner", "cleaned windows high up on a ladder", "a bucket of soapy water"),
    ("goatherd", "led goats up into the mountains", "a crooked staff"),
    ("cartographer", "drew maps of faraway lands", "a rolled-up map"),
)

MORE_WEATHER = (
    "A chilly drizzle was falling, the kind that soaks you slowly.",
    "Thunderclouds towered over the hills like castles.", "The breeze carried the salty smell of the sea.",
    "The snow squeaked under every step.", "Sunbeams slanted through the branches in golden stripes.",
    "Hailstones rattled against the windowpanes.", "The heat shimmered above the dusty road.",
    "A crisp wind sent the last leaves tumbling.", "The sky was the color of pewter.",
    "A gentle mizzle made everything glitter.",
)

EXTRA_GIRL_NAMES = _words("""
Acacia Bridget Colette Darcy Edith Felicity Georgia Hester Ines Jolene Kitty Lavinia Magnolia Nadine Ottilie
Prudence Rosemary Saffron Trixie Verity Wilhelmina Xanthe Yvette Zuzana Anouk Blanche Coralie Dorothea Esther
Flossie Gertrude Henrietta Isadora Jemima Kerensa Lucinda Mirabel Noelle Octavia Philippa
""")

EXTRA_BOY_NAMES = _words("""
Alistair Bartholomew Crispin Desmond Ebenezer Fergus Gilbert Humphrey Ignatius Jeremiah Kasimir Lysander
Montgomery Nathaniel Oswald Peregrine Rowan Sebastian Thaddeus Ulrich Valentin Wilfred Yardley Zebedee
Augustus Benedict Cornelius Dashiell Evander Florian Gulliver Hector Isidore Jethro Kingsley Lorcan
""")

# --- The tables the generator draws from: each base table joined with its additions above. ---
GIRL_NAMES = GIRL_NAMES + MORE_GIRL_NAMES + EXTRA_GIRL_NAMES
BOY_NAMES = BOY_NAMES + MORE_BOY_NAMES + EXTRA_BOY_NAMES
ANIMALS = ANIMALS + MORE_ANIMALS
TRAITS = TRAITS + MORE_TRAITS
OBJ_ADJ = OBJ_ADJ + MORE_ADJ
OBJECTS = OBJECTS + MORE_OBJECTS
FOODS = FOODS + MORE_FOODS
PLACES = PLACES + MORE_PLACES
ACTIVITIES = ACTIVITIES + MORE_ACTIVITIES
PROFESSIONS = PROFESSIONS + MORE_PROFESSIONS
WEATHER = WEATHER + MORE_WEATHER
SCENES = SCENES + MORE_SCENES
# fmt: on
